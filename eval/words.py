"""English word lists for the synthetic tasks (needle keys, word values, common-word extraction).

Generated once from the noun, adjective and verb lists of wonderwords 3.0.1 (MIT licence, copyright (c) 2020
Maxim Rebguns; https://pypi.org/project/wonderwords/): lowercase ASCII words of 3 to 12 letters, minus the
package's own profanity list, sorted and de-duplicated. Shipped as code so that evaluation needs no extra package
and no data files: the same word lists on every machine, hence the same prompts for the same seed.
"""

# fmt: off

NOUNS: tuple[str, ...] = tuple("""
aardvark abacus abbey abbreviation abdomen ability abnormality abolishment abrogation absence abundance abuse
academics academy accelerant accelerator accent acceptance access accessory accident accompanist accord accordance
accordion account accountant accounting accuracy accusation acetate achievement achiever acid acorn acoustics
acquaintance acquisition acre acrylic act activation activist activity actor actress acupuncture adaptation
adapter addiction addition address adjective adjustment admin admire admission adobe adoption adrenalin adrenaline
adult adulthood advance advancement advantage advent adverb advertising advice adviser advocacy advocate affair
affect affidavit affiliate affinity afoul afterlife aftermath afternoon aftershave aftershock afterthought age
agency agenda agent aggradation aggression aglet agony agreement agriculture aid aide aim air airbag airbus
aircraft airfare airfield airforce airline airmail airman airplane airport airship airspace alarm alb albatross
album alcohol alcove alder ale alert alfalfa algebra algorithm alias alibi alien allegation allergist alley
alliance alligator allocation allowance alloy alluvium almanac almighty almond alpaca alpenglow alpenhorn alpha
alphabet altar alteration alternative altitude alto aluminium aluminum amazement amazon ambassador amber ambience
ambiguity ambition ambulance amendment amenity ammunition amnesty amount amusement anagram analgesia analog
analogue analogy analysis analyst analytics anarchist anarchy anatomy ancestor anchovy android angel anger angina
angiosperm angle angora angstrom anguish animal anime anise ankle anklet anniversary announcement annual anorak
answer ant anteater antecedent antechamber antelope antennae anterior anthropology antibody anticipation anticodon
antigen antique antiquity antler antling anxiety anybody anyone anything anywhere apartment ape aperitif apology
app apparatus apparel appeal appearance appellation appendix appetiser appetite appetizer applause apple applewood
appliance application appointment appreciation apprehension approach approval apricot apron apse aquarium aquifer
arcade arch archaeology archeology archer architect architecture archives area arena argument arithmetic ark arm
armadillo armament armchair armoire armor armour armpit armrest army arrangement array arrest arrival arrogance
arrow art artery arthur artichoke article artifact artificer artist ascend ascent ascot ash ashram ashtray aside
asparagus aspect asphalt aspic assault assembly assertion assessment asset assignment assist assistance assistant
associate association assumption assurance asterisk astrakhan astrolabe astrologer astrology astronomy asymmetry
atelier atheist athlete athletics atmosphere atom atrium attachment attack attacker attainment attempt attendance
attendant attention attenuation attic attitude attorney attraction attribute auction audience audit auditorium
aunt authenticity author authority autoimmunity automation automaton autumn availability avalanche avenue average
avocado award awareness awe axis azimuth babe baboon babushka bachelor back backbone backburn backdrop background
backpack backup backyard bacon bacterium badge badger bafflement bag bagel baggage baggie baggy bagpipe bail bake
baker bakery bakeware balaclava balalaika balance balcony ballet balloon balloonist ballot ballpark bamboo ban
banana band bandana bandanna bandolier bandwidth bangle banjo bank bankbook banker banking bankruptcy banner
banquette banyan baobab bar barbecue barbeque barber barbiturate bargain barge baritone barium bark barley barn
barometer barracks barrage barrel barrier barstool bartender base baseball baseboard baseline basement basics
basil basin basis basket basketball bass bassinet bassoon bat bath bather bathhouse bathrobe bathroom bathtub
battalion battery batting battle battleship bay bayou beach bead beak beam bean beancurd beanie beanstalk bear
beard beast beastie beat beating beauty beck bed bedrock bedroom bee beech beef beer beet beetle beggar beginner
beginning begonia behalf behavior behaviour beheading behest behold being belfry belief believer bell belligerency
bellows belly belt bench bend beneficiary benefit beret berry bestseller bet beverage beyond bias bibliography
bicycle bid bidder bidding bidet bifocals bijou bike bikini bill billboard billing billion bin binoculars biology
biopsy biosphere biplane birch bird birdbath birdcage birdhouse birth birthday biscuit bit bite bitten bitter
blackberry blackbird blackboard blackfish blackness bladder blade blame blank blanket blast blazer blend blessing
blight blind blinker blister blizzard block blocker blog blogger blood bloodflow bloom bloomer blossom blouse
blowgun blowhole blueberry blush boar board boat boatload boatyard bob bobcat body bog bolero bolt bomb bomber
bombing bond bonding bondsman bone bonfire bongo bonnet bonsai bonus boogeyman book bookcase bookend booking
booklet bookmark boolean boom boon boost booster boot bootee bootie border bore borrower borrowing bosom boss
botany bother bottle bottling bottom boudoir bough boulder boulevard boundary bouquet bourgeoisie bout boutique
bow bower bowl bowler bowling bowtie box boxer boxspring boy boycott boyfriend boyhood boysenberry bra brace
bracelet bracket brain brake bran branch brand brandy brass brassiere bratwurst bread breadcrumb breadfruit break
breakdown breakfast breakpoint breakthrough breast breastplate breath breeze brewer bribery brick bricklaying
bride bridge brief briefing briefly briefs brilliant brink brisket broad broadcast broccoli brochure broiler
broker bronchitis bronco bronze brooch brood brook broom brother brow brownie browser browsing brunch brush
brushfire brushing bubble buck bucket buckle buckwheat bud buddy budget buffalo buffer buffet bug buggy bugle
builder building bulb bulk bull bulldozer bump bumper bun bunch bungalow bunkhouse burden bureau burglar burial
burlesque burn burning burrito burro burrow burst bus bush business businessman bust bustle butane butcher butler
butter butterfly button buy buyer buying buzz buzzard cabana cabbage cabin cabinet cable caboose cacao cactus
caddy cadet cafe caffeine caftan cage cake calculation calculator calculus calendar calf caliber calibre calico
calm calorie cameo camera camp campaign campaigning campanile camper campus can canal cancer candelabra candidacy
candidate candle candy cane cannibal cannon canoe canon canopy cantaloupe canteen canvas cap capability capacity
cape caper capital capitalism capitulation capon cappelletti cappuccino captain caption captor car carabao caramel
caravan carbohydrate carbon carboxyl card cardboard cardigan care career cargo caribou carload carnation carnival
carol carotene carp carpenter carpeting carport carriage carrier carrot carry cart cartel carter cartilage
cartload cartoon cartridge carving cascade case casement cash cashew cashier casino casket cassava casserole
cassock cast castanet castle casualty cat catacomb catalogue catalysis catalyst catamaran catastrophe catch
catcher category caterpillar cathedral cation catsup cattle cauliflower causal cause causeway caution cave caviar
cayenne ceiling celebration celebrity celeriac celery cell cellar cello celsius cement cemetery cenotaph census
cent center centimeter centre centurion century cephalopod ceramic ceramics cereal ceremony certainty certificate
cesspool chafe chain chainstay chair chairlift chairman chairperson chaise chalet chalice chalk challenge chamber
champagne champion championship chance chandelier change channel chaos chap chapel chaplain chapter character
chard charge charger charity charlatan charm charset chart charter chasm chassis chastity chasuble chateau chatter
chauffeur chauvinist check checkbook checking checkout checkroom cheddar cheek cheer cheese cheesecake cheetah
chef chem chemical chemistry chemotaxis cheque cherry chess chestnut chicken chicory chief chiffonier child
childbirth childhood chili chill chime chimpanzee chin chinchilla chino chip chipmunk chivalry chive chives choice
choir choker cholesterol choosing chop chops chopstick chopsticks chord chorus chow chowder chrome chronicle
chronograph chronometer chrysalis chub chuck chug church churn chutney cicada cigarette cilantro cinder cinema
cinnamon circadian circle circuit circulation circumstance cirrhosis cirrus citizen citizenship citron citrus city
civilian civilisation civilization claim clam clamp clan clank clapboard clarinet clarity clasp class classic
classmate classroom clause clave clavicle clavier claw clay cleaner clearance clearing cleat cleavage clef cleft
clergyman cleric clerk click client cliff climate climb clinic clip clipboard clipper cloak cloakroom clock
clockwork clogs cloister clone close closet closing closure cloth clothes clothing cloud cloudburst clove cloves
clue cluster clutch coach coal coalition coast coaster coat cob cobbler cobweb cockpit cockroach cocktail cocoa
coconut cod code codepage codling codon codpiece coevolution cofactor coffee coffin cohesion cohort coil coin
coincidence coinsurance coke cold coleslaw coliseum collagen collapse collar collard collateral colleague
collection collector college collision colloquy colon colonial colonialism colonisation colonization colony color
colt column columnist comb combat combination combine comeback comedy comestible comfort comfortable comic comics
comma command commander commandment comment commerce commercial commission commitment committee commodity common
commonsense commotion communicant communion communist community commuter company comparison compass compassion
compensation competence competition competitor complaint complement completion complex complexity compliance
complication complicity compliment component comportment composer composite composition compost compress
compromise comptroller compulsion computer comradeship con concentrate concept conception concern concert
conclusion concrete condition conditioner condominium condor conduct conductor cone conference confidence
confirmation conflict conformation confusion conga congo congregation congress congressman conifer connection
connotation conscience consensus consent consequence conservation conservative consignment consist consistency
console consonant conspiracy conspirator constant constitution constraint construction consul consulate consulting
consumer consumption contact contagion container content contention contest context continent contingency
continuity contour contract contractor contrail contrary contrast contribution contributor control controller
controversy convection convenience convention conversation conversion convert convertible conviction cook cookbook
cookie cooking coonskin cooperation coordination coordinator cop cope copper copy copying copyright copywriter
coral cord corduroy cork cormorant corn corner cornerstone cornet cornflakes cornmeal corporal corporation
corporatism corps corral corridor corruption corsage cosset cost costume cot cottage cotton couch cougar cough
council councilman councilor counsel counseling counselling counsellor counselor count counter counterpart
countess country countryside county couple coupon courage course court courthouse courtroom cousin covariate cover
coverage coverall cow cowbell cowboy coyote crab crack cracker crackers cradle craft craftsman cranberry crane
cranky crash crate cravat craw crawdad crayfish crayon crazy cream creation creationism creationist creative
creativity creator creature creche credential credenza credibility credit creditor creek crepe crest crew crewman
crewmate crewmember crewmen cria crib cribbage cricket cricketer crime criminal crinoline crisis crisp criteria
criterion critic criticism crocodile crocus croissant crook crop cross crotch croup crow crowd crown crucifixion
crude cruelty cruise crumb crunch crusader crush crust cry crystal cub cube cuckoo cucumber cue cuisine cultivar
cultivator culture culvert cummerbund cupboard cupcake cupola curd cure curio curiosity curl curler currant
currency current curriculum curry curse cursor curtailment curtain curve cushion custard custody custom customer
cut cuticle cutlet cutover cutting cyclamen cycle cyclone cygnet cylinder cymbal cynic cyst cytokine cytoplasm dad
daddy daffodil dagger dahlia daikon daily dairy daisy dam damage dame dance dancer dancing dandelion danger dare
dark darkness darn dart dash dashboard data database daughter dawn day daybed daylight dead deadline deal dealer
dealing dearest death deathwatch debate debris debt debtor decade decadence decency decimal decision deck
declaration declination decline decoder decongestant decoration decrease decryption dedication deduce deduction
deed deer default defeat defendant defender defense deficit definition deformation degradation degree delay
deliberation delight delivery demand democracy democrat demon demur den denim denominator density dentist
deodorant department departure dependency dependent deployment deposit deposition depot depression depressive
depth deputy derby derivation derivative derrick descendant descent description desert design designation designer
desire desk desktop dessert destination destiny destroyer destruction detail detainee detainment detection
detective detector detention detour devastation developer developing development deviance deviation device devil
dew dhow diabetes diadem diagnosis diagram dial dialect dialogue diam diamond diaper diaphragm diarist diary
dibble dickey dictaphone dictator diction dictionary die diesel diet difference differential difficulty diffuse
dig digestion digestive digger digging digit dignity dilapidation dill dilution dime dimension dimple diner dinghy
dining dinner dinosaur dioxide dip diploma diplomacy dipstick direction directive director directory dirndl dirt
disability disadvantage disagreement disarmament disaster discharge discipline disclaimer disclosure disco
discount discourse discovery discrepancy discretion discussion disdain disease disguise disgust dish dishwasher
disk disparity dispatch displacement display disposal disposer disposition dispute disregard disruption dissonance
distance distinction distortion distribution distributor district divalent divan diversity divide dividend divider
divine diving division divorce doc dock doctor doctorate doctrine document documentary doe dogsled dogwood doing
doll dollar dollop dolman dolor dolphin domain dome donation donor door doorbell doorknob doorpost doorway dory
dose dot doubling doubt doubter dough doughnut down downfall downforce downgrade download downstairs downtown
downturn dozen draft drag dragon dragonfly dragonfruit dragster drain drainage drake drama dramaturge drapes draw
drawbridge drawer drawing dreamer dredger dress dresser dressing drill drink drinking drive driver driveway
driving drizzle dromedary drop drudgery drug drum drummer drunk dryer duck duckling dud dude due duel dueling
duffel dugout dulcimer dumbwaiter dump dune dungarees dungeon duplexer duration durian dusk dust duster duty dwarf
dwell dwelling dynamics dynamite dynamo dynasty dysfunction eagle eaglet ear eardrum earmuffs earnings earplug
earring earrings earth earthquake earthworm ease easel east eating eaves eavesdropper ecclesia echidna eclipse
ecliptic ecology economics economy ecosystem ectoderm ectodermal ecumenist eddy edge edger edible editing edition
editor editorial education eel effacement effect effective effector efficacy efficiency effort egg egghead eggnog
eggplant ego eicosanoid ejector elbow elderberry election electricity electronics element elephant elevation
elevator eleventh elf elicit eligibility elimination elite elixir elk ellipse elm elongation elver email emanate
embassy embossing embryo emerald emergence emergency emergent emery emission emitter emotion emphasis empire
employ employee employer employment empowerment emu enactment encirclement enclave enclosure encounter
encyclopedia end endive endoderm endorsement endothelium endpoint enemy energy enforcement engagement engine
engineer engineering enigma enjoyment enquiry enrollment enterprise enthusiasm entirety entity entrance entree
entrepreneur entry envelope environment envy enzyme epauliere epee ephemera ephemeris ephyra epic episode
epithelium epoch eponym epoxy equal equality equation equinox equipment equity equivalent era eraser erection
erosion error escalator escape espadrille espalier essay essence essential estate estimate estrogen estuary
eternity ethernet ethics ethnicity ethyl euphonium eurocentrism evaluation evaluator evaporation eve evening event
everybody everyone everything eviction evidence evil evocation evolution exaggeration exam examination examiner
example exasperation excellence exception excerpt excess exchange excitement exclamation excursion excuse
execution executive executor exercise exhaust exhaustion exhibit exhibition exile existence exit exocrine
expansion expansionism expectancy expectation expedition expense experience experiment expert expertise
explanation exploration explorer explosion export expose exposition exposure expression extension extent exterior
external extinction extreme extremist eye eyeball eyebrow eyebrows eyeglasses eyelash eyelashes eyelid eyelids
eyeliner eyestrain eyrie fabric face facelift facet facility facsimile fact factor factory faculty fahrenheit fail
failure fairness fairy faith faithful fall fallacy fame familiar familiarity family fan fang fanlight fantasy farm
farmer farming farmland farrow fascia fashion fate father fatigue fatigues faucet fault fav fava favor favorite
fawn fax fear feast feather feature fedelini federation fedora fee feed feedback feeding feel feeling fellow
felony fen fence fencing fender feng fennel ferret ferry ferryboat fertilizer festival fetus few fiber fiberglass
fibre fibroblast fibrosis ficlet fiction fiddle field fiery fiesta fifth fig fight fighter figure figurine file
filing fill fillet filly film filter filth final finance financing finding fine finer finger fingerling fingernail
finish finisher fir fire fireman fireplace firewall firm first fish fishbone fisherman fishery fishing fishmonger
fishnet fit fitness fix fixture flag flair flame flan flanker flare flash flat flatboat flavor flax fleck
fledgling fleece flesh flexibility flick flicker flight flint flintlock flock flood floodplain floor floozie flour
flow flower flu flugelhorn fluke flume flung flute fly flytrap foal foam fob focus fog fold folder folk folklore
follower following fondue font food foodstuffs fool footage football footnote footprint footrest footstep
footstool footwear forage forager foray force ford forearm forebear forecast forehead foreigner forelimb forest
forestry forever forgery fork form formal formamide format formation former formicarium formula fort forte
fortnight fortress fortune forum foundation founder founding fountain fourths fowl fox foxglove fraction fragrance
frame framework fratricide fraud fraudster freak freckle freedom freelance freezer freezing freight freighter
frenzy freon frequency fresco friction fridge friend friendship fries frigate fright fringe fritter frock frog
front frontier frost frosting frown fruit frustration fry fuel fugato fulfillment full fun function fund funding
fundraising funeral fur furnace furniture furry fusarium futon future gadget gaffe gaffer gain gaiters gale
gallery galley gallon galoshes gambling game gamebird gaming gander gap garage garb garbage garden garlic garment
garter gas gasket gasoline gasp gastronomy gastropod gate gateway gather gathering gator gauge gauntlet gavel
gazebo gazelle gear gearshift geek gel gelatin gelding gem gemsbok gender gene general generation generator
generosity genetics genie genius genocide genre gentleman geography geology geometry geranium gerbil gesture
geyser gherkin ghost gift gig gigantism giggle ginger gingerbread ginseng giraffe girdle girlfriend git glacier
gladiolus glance gland glass glasses glee glen glider gliding glimpse globe glockenspiel gloom glory glove glow
glucose glue glut glutamate gnat gnu goal goat gobbler goddess godfather godmother godparent goggles going gold
goldfish golf gondola gong good goodbye goodie goodness goodnight goodwill goose gopher gorilla gosling gossip
governance government governor gown grace grade gradient graduate graduation graffiti graft grain gram grammar
gran grand grandchild grandfather grandma grandmom grandmother grandpa grandparent grandson granny granola grant
grape grapefruit graph graphic grasp grass grasshopper grassland gratitude gravel gravitas gravity gray grease
greatness greed green greenhouse greens grenade grey grid grief grill grin grip gripper grit grocery ground
grouper grouse grove growth grub guacamole guarantee guard guava guerrilla guess guest guestbook guidance guide
guideline guilder guilt guilty guinea guitar guitarist gum gumshoe gun gunpowder gutter gym gymnast gymnastics
gynaecology gyro habit habitat hacienda hacksaw hackwork hail hair haircut hake half halibut hall halloween
hallway halt ham hamburger hammer hammock hamster handball handful handgun handicap handle handlebar handmaiden
handover handrail handsaw hanger happening happiness harald harbor harbour hardboard hardcover hardening hardhat
hardship hardware hare harm harmonica harmonise harmonize harmony harp harpooner harpsichord harvest harvester
hash hashtag hassock haste hat hatbox hatchet hatchling hate hatred haunt haven haversack havoc hawk hay haze
hazel hazelnut head headache headlight headline headphones headquarters headrest health hearing hearsay heart
heartache heartbeat hearth hearthside heartwood heat heater heating heaven heavy hectare hedge hedgehog heel
heifer height heir heirloom helicopter helium hellcat hello helmet helo help hemisphere hemp hen hepatitis herb
herbs heritage hermit hero heroine heron herring hesitation heterosexual hexagon heyday hiccups hide hierarchy
high highland highlight highway hike hiking hill hint hip hippodrome hippopotamus hire hiring historian history
hive hobbit hobby hockey hog hold holder holiday home homeland hometown homework homicide homogenate homonym
homosexual honesty honey honeybee honeydew honor honoree hood hoof hook hop hope hops horde horizon hormone horn
hornet horror horse horseradish horst hose hosiery hospice hospital hospitality host hostel hostess hotdog hotel
hound hour hourglass house houseboat household housewife housework housing hovel hovercraft howard howitzer hub
hubcap hubris hug hugger hull human humanity humidity hummus humor humour hunchback hundred hunger hunt hunter
hunting hurdle hurdler hurricane hurry hurt husband hut hutch hyacinth hydrant hydraulics hydrocarb hydrocarbon
hydrofoil hydrogen hydrolyse hydrolysis hydrolyze hydroxyl hyena hygienic hype hyphenation hypochondria
hypothermia hypothesis ice iceberg icebreaker icecream icicle icing icon icy idea ideal identity ideology idiom
igloo ignorance ignorant ikebana illegal illiteracy illness illusion illustration image imagination imbalance
imitation immigrant immigration immortal impact impairment impala impediment implement implication import
importance impostor impress impression imprisonment impropriety improvement impudence impulse inability
inauguration inbox incarnation incense incentive inch incidence incident incision inclusion income incompetence
increase incubation independence independent index indication indicator indigence individual industry inequality
inevitable infancy infant infarction infection infiltration infinite infix inflammation inflation influence influx
info information infusion inglenook ingrate ingredient inhabitant inheritance inhibition inhibitor initial
initialise initialize initiative injunction injury injustice ink inlay inn innervation innocence innocent
innovation input inquiry inscription insect insectarium insert inside insight insolence insomnia inspection
inspector inspiration installation instance instant instinct institute institution instruction instructor
instrument insulation insurance insurgence insurrection integer integral integration integrity intellect
intelligence intensity intent intention interaction interchange interest interface interior interject interloper
internet interpreter interval intervenor intervention interview interviewer intestine introduction intuition
invader invasion invention inventor inventory inverse inversion investigator investment investor invitation invite
invoice involvement iridescence iris iron ironclad irony irrigation ischemia island isogloss isolation issue item
itinerary ivory jackal jackfruit jade jaguar jailhouse jam jasmine jaw jazz jealousy jeans jeep jellybeans
jellyfish jet jewel jeweller jewellery jewelry jicama jiffy jockey jodhpurs joey jogging joint joke jot journal
journalism journalist journey joy judge judgment judo jug juggernaut julienne jumbo jump jumper jumpsuit jungle
junior junk junker junket jury justice jute kale kamikaze kangaroo karate kayak kazoo kebab keep keeper kendo
kennel ketch ketchup kettle kettledrum key keyboard keyboarding keystone kick kid kidney kielbasa killer killing
kilogram kilometer kilt kimono kinase kind kindness king kingdom kingfish kiosk kiss kit kitchen kite kitsch
kitten kitty kiwi knee kneejerk knickers knife knight knitting knock knot knowledge knuckle koala kohlrabi kumquat
lab label labor laboratory laborer labour labourer lace lack lacquerware lad ladder ladle lady ladybug lag lake
lamb lambkin lament lamp lanai land landform landing landmine landscape lane language lantern lap laparoscope
lapdog laptop larch lard larder lark larva laryngitis lasagna lashes last latency latex lathe latitude latte
latter laugh laughter laundry lava law lawmaker lawn lawsuit lawyer lay layer layout lead leader leadership
leading leaf league leaker leap learning leash leave leaver lecture leek leeway left leg legacy legend legging
legislation legislator legislature legitimacy legume leisure lemonade lemur lender lending length lens lentil
leopard leprosy lesbian lesson letter lettuce level lever leverage leveret liability liar liberty libido library
licence license licensing licorice lid lie lieu lieutenant life lifestyle lifetime lift ligand light lighting
lightning lightscreen ligula likelihood likeness lilac lily limb lime limestone limit limitation limo line linen
liner linguist linguistics lining link linkage linseed lion lip lipid lipoprotein lipstick liquid liquidity liquor
list listening listing literate literature litigation litmus litter littleneck liver livestock living lizard llama
loading loaf loafer loan lobby lobotomy lobster local locality location lock locker locket locomotive locust lode
loft log loggia logic login logistics logo loincloth lollipop loneliness longboat longitude look lookout loop
loophole loquat lord loss lot lotion lottery lounge louse lout lover lox loyalty luck luggage lumber lumberman
lunch luncheonette lunchmeat lunchroom lung lunge lute luxury lychee lycra lye lymphocyte lynx lyocell lyre lyrics
lysine macadamia macaroni macaroon macaw machine machinery macrame macro macrofauna madam maelstrom maestro
magazine maggot magic magnet magnitude maid maiden mail mailbox mailer mailing mailman main mainland mainstream
maintainer maintenance maize major majority makeover maker makeup making malice mall mallard mallet malnutrition
mama mambo mammoth man manacle management manager manatee mandarin mandate mandolin mangle mango mangrove manhunt
maniac manicure manipulation mankind manner manor mansard manservant mansion mantel mantle mantua manufacturer
many map maple mapping maracas marathon marble march mare margarine margin mariachi marimba marines marionberry
mark marker market marketer marketing marketplace marksman markup marmalade marriage marsh marshland marshmallow
marten marxism mascara mask masonry mass massage mast master masterpiece mastication mastoid mat match matchmaker
mate material maternity math mathematics matrix matter mattock mattress max maximum maybe mayonnaise mayor meadow
meal mean meander meaning means meantime measles measure measurement meat meatball meatloaf mecca mechanic
mechanism med medal media median medication medicine medium meet meeting melatonin melody melon member membership
membrane meme memo memorial memory menopause menorah mention mentor menu merchandise merchant mercury meridian
meringue merit mesenchyme mess message messenger messy metabolite metal metallurgist metaphor meteor meteorology
meter methane method methodology metric metro metronome mezzanine microlending microphone microwave midden middle
middleman midline midnight midwife might migrant migration mile mileage milepost milestone military milk milkshake
mill millennium millet millimeter million millisecond millstone mime mimosa min mincemeat mind mine mineral
mineshaft mini minibus minimalism minimum mining minion minister mink minnow minor minority mint minute miracle
mirror miscarriage misfit misnomer misogyny misplacement misreading miss missile mission mist mistake mister miter
mitten mix mixer mixture moai moat mob mobile mobility mobster moccasins mocha mochi mode model modeling modem
modernist modernity modification molar molasses molding mole molecule mom moment monastery monasticism money
monger monitor monitoring monk monkey monocle monopoly monotheism monsoon monster month monument mood moody moon
moonlight moonscape moonshine mop morale morbid morbidity morning moron morphology morsel mortal mortality
mortgage mortise mosque mosquito most motel moth motion motivation motive motor motorboat motorcar motorcycle
mountain mouse mouser mousse moustache mouth mouton movement mover movie mower mozzarella mud muffin mug mukluk
mule multimedia muscat muscatel muscle musculature museum mushroom music musician muskrat mussel mustache mustard
mutation mutt mutton mycoplasma mystery myth mythology nail name naming nanoparticle napkin narrative nasal nation
nationality native nature navigation necessity neck necklace necktie nectar nectarine need needle neglect negligee
negotiation neighbor neighborhood neighbour neologism neon neonate nephew nerve nest nestling nestmate net netball
netbook netsuke network networking neuron news newsletter newspaper newsprint newsstand nexus nibble nicety niche
nick nickel nickname niece night nightclub nightgown nightingale nightlife nightlight nightmare ninja nit nitrogen
nobody nod node noir noise nonbeliever nonsense noodle noodles noon norm normal north nose notation note notebook
notepad nothing notice notion notoriety nougat noun nourishment novel nucleotidase nucleotide nudge nuke number
numeracy numeric numismatist nun nurse nursery nursing nurture nut nutmeg nutrient nutrition nylon nymph oak oar
oasis oat oatmeal oats obedience obesity obi object objection objective obligation oboe observation observatory
obsession obsidian obstacle occasion occupation occurrence ocean ocelot octagon octave octavo octet octopus
odometer odyssey oeuvre offence offense offer offering office officer official offset oil okra oldie oleo olive
omega omelet omission omnivore oncology onion online onset opening opera operating operation operator opinion
opium opossum opponent opportunist opportunity opposite opposition optimal optimisation optimist optimization
option orange orangutan orator orchard orchestra orchid order ordinary ordination ore oregano organ organisation
organising organization organizing orient orientation origin original originality ornament osmosis osprey ostrich
other otter ottoman ounce outback outcome outfielder outfit outhouse outlaw outlay outlet outline outlook output
outrage outrigger outrun outset outside oval ovary oven overcharge overclocking overcoat overexertion overflight
overhead overheard overload overnighter overshoot oversight overview overweight owl owner ownership oxford oxygen
oyster ozone pace pacemaker pack package packaging packet pad paddle paddock pagan page pagoda pail pain paint
painter painting paintwork pair pajamas palace palate pamphlet pan pancake pancreas panda panel panic pannier
panpipe pansy panther pantologist pantology pantry pants pantsuit pantyhose papa papaya paper paperback paperwork
parable parachute parade paradise paragraph paramecium paramedic parameter paranoia parcel parchment pard pardon
parent parenthesis parenting park parka parking parliament parole parrot parser parsley parsnip part participant
particle particular partner partnership partridge pass passage passbook passenger passing passion passive passport
password past pasta paste pastor pastoralist pastry pasture pat patch pate patent patentee path pathogenesis
pathology pathway patience patient patina patio patriarch patrimony patriot patrol patroller patrolling patron
pattern patty pattypan pause pavement pavilion paw pawnshop pay payee payment payoff pea peace peach peacoat
peacock peak peanut pear pearl peasant pecan pedal peek peen peer pegboard pelican pelt pen penalty pence pencil
pendant pendulum penguin penicillin peninsula pennant penny pension pentagon peony people pepper pepperoni percent
percentage perception perch perennial perfection performance perfume period periodical peripheral permafrost
permission permit perp persimmon person personal personality personnel perspective pest pet petal petition
petitioner petticoat pew pharmacist phase pheasant phenomenon phenotype pheromone philanthropy philosopher
philosophy phosphate photo photodiode photograph photographer photography phrase phrasing physical physics
physiology pianist piano piccolo pick pickax pickaxe picket pickle pickup picnic picture picturesque pie pier
piety pigeon piglet pigpen pigsty pike pilaf pile pilgrim pilgrimage pill pillar pillbox pillow pilot pimp pimple
pin pinafore pine pineapple pinecone ping pink pinkie pinot pinstripe pint pinto pinworm pioneer pipe piracy
pirate pistol pit pita pitch pitcher pitching pith pizza place placebo placement placode plagiarism plain
plaintiff plan plane planet planning plant plantation planter planula plaster plasterboard plastic plate platelet
platform platinum platter platypus player playground playroom playwright plea pleat pledge plenty plier pliers
plight plot plough plover plow plowman plug plugin plum plumber plume plunger plywood pneumonia pocketbook pod
podcast poem poet poetry poignance point poison poisoning poker polarisation polarization polenta police policeman
policy polish politician politics poll polliwog pollutant pollution polo polyester polyp pomegranate pomelo pompom
poncho pond pony pool poor pop popcorn poppy popsicle popularity population populist porcelain porch porcupine
pork porpoise port porter portfolio porthole portion portrait possession possibility possible post postage postbox
poster posterior postfix pot potato potential pottery potty pouch poultry pound pounding poverty powder practice
practitioner prairie praise prayer precedence precedent precision predecessor preface preference prefix pregnancy
prejudice prelude premier premise premium preparation prescription presence present presentation preservation
preserves presidency president press pressroom pressure prestige presume pretzel prevalence prevention prey price
pricing pride priest priesthood primary primate princess principal principle print printer printing prior priority
prison prisoner privacy private privilege prize prizefight probability probation probe problem procedure
proceedings process processing processor proctor procurement produce producer product production productivity
profession professional professor profile profit progenitor program programme programming progress progression
prohibition project promenade promise promotion prompt pronoun proof propaganda propane property prophet proponent
proportion proposal proposition proprietor prose prosecution prosecutor prospect prosperity prostacyclin
prostanoid prostrate protection protein protest protocol providence provider province provision prow proximal
proximity prune pruner pseudocode psychiatrist psychologist psychology ptarmigan pub public publication publicity
publisher publishing pudding puddle puffin pug puggle pulley pulse puma pump pumpernickel pumpkin pumpkinseed pun
punctuation punishment pup pupa pupil puppet puppy purchase puritan purity purple purpose purr purse pursuit push
pusher put puzzle pyramid pyridine quadrant quail quality quantity quart quarter quartet quartz queen query quest
question questioner quiche quicksand quiet quill quilt quince quinoa quit quiver quota quotation quote rabbi
rabbit raccoon race racer racing racism racist rack radar radiator radio radiosonde radish raffle raft rag rage
raid rail railing railroad railway raiment rain rainbow raincoat rainmaker rainstorm rainy raise raisin rake rally
ram rambler ramen ramie ranch rancher range ranger rank rap raspberry rat rate ratepayer rating ratio rationale
rations raven ravioli rawhide ray rayon razor reach reactant reaction read reader readiness reading real reality
realization realm reamer rear reason reasoning rebel rebellion reboot recall receipt receiver reception receptor
recess recession recipe recipient reciprocity reclamation recliner recognition recollection record recorder
recording recovery recreation recruit rectangle red redesign redhead redirect rediscovery reduction reef refectory
reference referendum reflection reform refreshments refrigerator refuge refund refusal refuse regard regime region
regionalism register registration registry regret regulation regulator reindeer reject relation relationship
relative relaxation relay release reliability relief religion relish reluctance remains remark reminder remnant
remote removal renaissance rent repair reparation repayment repeat replacement replica replication reply report
reporter reporting repository reprocessing republic republican reputation request requirement resale rescue
research researcher resemblance reservation reserve reservoir reset residence resident residue resist resistance
resolution resolve resort resource respect respite response rest restaurant restoration restriction restroom
result resume retailer retention rethinking retina retirement retouching retreat retrospect return reunion reveal
revelation revenant revenge revenue reversal review revival revolution revolver reward rhetoric rheumatism
rhinoceros rhubarb rhyme rhythm rib ribbon rice riddle ride rider ridge riding rifle right rim ring ringworm riot
rip ripple rise riser risk rite ritual river riverbed rivulet road roadway roar roast robe robin robot robotics
rock rocker rocket rod role roll roller romaine romance roof room roommate rooster root rope rose rosemary roster
rostrum rotation round roundabout route router routine row rowboat rowing rubber rubbish rubric ruby ruckus
rudiment ruffle rug rugby ruin rule ruler ruling rum rumor run runaway runner running runway rush rust rutabaga
rye sabre sac saddle sadness safari safe safeguard safety saffron sage sail sailboat sailing sailor saint sake
salad salami salary sale salesman salmon salon saloon salsa salt salute samovar sampan sample samurai sanction
sanctity sanctuary sand sandal sandbar sandpaper sandwich sanity sardine sari sarong sash satellite satin satire
satisfaction sauce saucer sauerkraut sausage savage savannah saving savings savior saviour savory saw saxophone
scaffold scale scallion scallops scalp scam scanner scarecrow scarf scenario scene scenery scent schedule
scheduling schema scheme schnitzel scholar scholarship school schoolhouse schooner science scientist scimitar
scissors scooter scope score scorn scorpion scotch scout scow scrambled scrap scraper scratch screamer screen
screening screw screwdriver scrim scrip script scripture scrutiny sculpting sculptural sculpture sea seabass
seafood seagull seal seaplane search seashore seaside season seat seaweed second secrecy secret secretariat
secretary secretion section sectional sector security sediment seed seeder seeker seep segment seizure selection
self seller selling semantics semester semicircle semicolon seminar senate senator sender senior sense sensibility
sensitive sensitivity sensor sentence sentencing sentiment sepal separation septicaemia sequel sequence serial
series sermon serum serval servant server service servitude sesame session set setback setting settlement settler
severity sewer sexuality shack shackle shade shadow shadowbox shakedown shaker shallot shallows shame shampoo
shanty shape share shareholder shark shaw shawl shear shearling sheath shed sheep sheet shelf shell shelter
sherbet sherry shield shift shin shine shingle ship shipper shipping shipyard shirt shirtdress shoat shock shoe
shoehorn shoelace shoemaker shoes shoestring shofar shoot shootdown shop shopper shopping shore shoreline short
shortage shorts shortwave shot shoulder shout shovel show shred shrimp shrine shutdown sibling sick sickness side
sideboard sideburns sidecar sidestream sidewalk siding siege sigh sight sightseeing sign signal signature signet
significance signify signup silence silica silicon silk silkworm sill silly silo silver similarity simple
simplicity simvastatin sin singer singing singular sink sinuosity sip sir sister sitar site situation size skate
skating skean skeleton ski skiing skill skin skirt skull skullcap skullduggery skunk sky skylight skyline
skyscraper skywalk slang slapstick slash slate slave slavery slaw sled sledge sleep sleepiness sleeping sleet
sleuth slice slide slider slime slip slipper slippers slope slot sloth slump smell smelting smile smith smock smog
smoke smoking smolt smuggling snack snail snake snakebite snap snarl sneaker sneakers sneeze sniffle snob snorer
snow snowboarding snowflake snowman snowmobiling snowplow snowstorm snowsuit snuck snug snuggle soap soccer
socialism socialist society sociology sock socks soda sofa softball softdrink softening software soil soldier sole
solicitation solicitor solidarity solidity soliloquy solitaire solution solvency sombrero somebody someone
someplace somersault something somewhere son sonar sonata song songbird sonnet soot sophomore soprano sorbet
sorghum sorrel sorrow sort soul soulmate sound soundness soup source sourwood sousaphone south southeast souvenir
sovereignty sow soy soybean space spacing spade spaghetti span spandex spank sparerib spark sparrow spasm spat
spatula spawn speaker speakerphone speaking spear spec special specialist specialty species spectacle spectacles
spectrograph spectrum speculation speech speed speedboat spell spelling spelt spending sphere sphynx spice spider
spiderling spike spill spinach spine spiral spirit spiritual spirituality spit spite spleen splendor split
spokesman spokeswoman sponge sponsor sponsorship spool spoon spork sport sportsman spot spotlight spouse sprag
sprat spray spreadsheet spree spring sprinkles sprinter sprout spruce spud spume spur spy spyglass square squash
squatter squeegee squid squirrel stab stability stable stack stacking stadium staff stag stage stain stair
staircase stake stalk stall stallion stamen stamina stamp stance stand standard standing standoff standpoint star
starboard start starter state statement statin station statistic statistics statue status statute stay steak
stealth steam steamroller steel steeple stem stench stencil step stepdaughter stepmother stepson stereo stew
steward stick sticker stiletto still stimulation stimulus sting stinger stitch stitcher stock stockings stole
stomach stone stonework stool stop stopsign stopwatch storage store storey storm story storyboard stot stove
strait strand stranger strategy straw strawberry strawman stream street streetcar strength stress stretch strife
strike string stripe strobe stroke structure strudel struggle stucco stud student studio study stuff stumbling
stump stupidity sturgeon sty styling stylus sub subcomponent subconscious subgroup subject submarine submitter
subprime subroutine subscription subsection subset subsidence subsidiary subsidy substance substitution subtitle
suburb subway success succotash sucker suede suet suffocation sugar suggestion suit suitcase suite sulfur sultan
sum summary summer summit sun sunbeam sunbonnet sundae sunday sundial sunflower sunglasses sunlamp sunlight
sunrise sunroom sunset sunshine superiority supermarket supernatural supervision supervisor supper supplement
supplier supply support supporter suppression supreme surface surfboard surge surgeon surgery surname surplus
surprise surround surroundings surrounds survey survival survivor sushi suspect suspenders suspension sustainment
sustenance swallow swamp swan swanling swath sweat sweater sweatshirt sweatshop sweatsuit sweets swell swim
swimming swimsuit swine swing switch switchboard switching swivel sword swordfight swordfish sycamore symbol
symmetry sympathy symptom syndicate syndrome synergy synod synonym synthesis syrup system tab tabby tabernacle
table tablecloth tablet tabletop tachometer tackle taco tactics tactile tadpole tag tail tailbud tailor tailspin
takeover tale talent talk talking tamale tambour tambourine tan tandem tangerine tank tanker tankful tap tape
tapioca target taro tarragon tart task tassel tatami tattler tattoo tavern tax taxi taxicab taxpayer teacher
teaching team teammate teapot tear tech technician technique technologist technology tectonics teen teenager
teepee telephone telescreen teletype television tell teller temp temper temperature temple tempo temporary
temptation temptress tenant tendency tender tenement tenet tennis tenor tension tensor tent tentacle tenth tepee
teriyaki term terminal termination terminology termite terrace terracotta terrapin terrarium territory terror
terrorism terrorist test testament testimonial testimony testing text textbook textual texture thanks thaw theater
theft theism theme theology theory therapist therapy thermals thermometer thermostat thesis thickness thief thigh
thing thinking thirst thistle thong thongs thorn thought thousand thread threat threshold thrift thrill throne
thrush thrust thug thumb thump thunder thunderbolt thunderhead thunderstorm thyme tiara tic tick ticket tide tie
tiger tights tile till tilt timbale timber time timeline timeout timer timetable timing timpani tin tinderbox
tinkle tintype tip tire tissue titanium title toad toast toaster tobacco today toenail toffee tofu tog toga toilet
tolerance tolerant toll tomatillo tomato tomb tomography tomorrow ton tonality tone tonic tonight tool toot tooth
toothbrush toothpaste toothpick topic topsail toque toreador tornado torso torte tortellini tortilla tortoise
total tote touch tour tourism tourist tournament towel tower town townhouse township toy trace trachoma track
tracking tracksuit tract tractor trade trader trading tradition traffic trafficker tragedy trail trailer
trailpatrol train trainer training trait tram tramp trance transaction transcript transfer transit transition
translation transmission transom transparency transport trap trapdoor trapezium trapezoid trash travel traveler
tray treasure treasury treat treatment treaty tree trek trellis tremor trench trend triad trial triangle tribe
tributary trick trigger trigonometry trillion trim trinket trip tripod tritone triumph trolley troop trooper
trophy trouble trousers trout trove trowel truck trumpet trunk trust trustee truth try tsunami tuba tube tuber tug
tugboat tuition tulip tumbler tummy tuna tune tunic tunnel turban turf turkey turmeric turn turning turnip
turnover turnstile turret turtle tusk tussle tutu tuxedo tweet tweezers twig twilight twine twins twist twister
twitter type typeface typewriter typhoon ukulele ultimatum umbrella unblinking uncertainty uncle underclothes
underground underneath underpants underpass undershirt undertaker underwear underweight underwire underwriting
unemployment unibody uniform uniformity union unique unit unity universe university update upgrade uplift upper
upstairs upward urge urgency urn usage use user usher usual utensil utilisation utility utilization vacation
vaccine vacuum vagrant valance valentine validate validity valley valuable value vampire van vanadyl vane vanilla
vanity variability variable variant variation variety vascular vase vault vaulting veal vector vegetable
vegetarian vegetation vehicle veil vein veldt vellum velocity velodrome velvet vendor veneer vengeance venison
venom venti venture venue veranda verb verdict verification vermicelli vernacular verse version vertigo verve
vessel vest vestment vet veteran veterinarian veto viability vibraphone vibration vibrissae vice vicinity victim
victory video view viewer vignette villa village vine vinegar vineyard vintage vintner vinyl viola violation
violence violin virginal virtue virus visa viscose vise vision visit visitor visor vista visual vitality vitamin
vitro vivo vixen vodka vogue voice void vol volatility volcano volleyball volume volunteer volunteering vomit vote
voter voting voyage vulture wad wafer wage wagon waist waistband wait waiter waiting waitress waiver wake walk
walker walking walkway wall wallaby wallet walnut walrus wampum wannabe want war warden wardrobe warfare warlock
warlord warming warmth warning warrant warren warrior wasabi wash washbasin washcloth washer washtub wasp waste
wastebasket wasting watch watcher watchmaker water waterbed watercress waterfall waterfront watermelon waterskiing
waterspout waterwheel wave waveform wax way weakness wealth weapon wear weasel weather web webinar webmail webpage
website wedding wedge weed weeder weedkiller week weekend weekender weight weird welcome welfare well west western
wetland wetsuit whack whale wharf wheat wheel whelp whey whip whirlpool whirlwind whisker whiskey whisper whistle
whole wholesale wholesaler whorl wick widget widow width wife wifi wildebeest wilderness wildlife will willingness
willow win wind windage window windscreen windshield wine winery wing wingman wingtip wink winner winter wire
wiretap wiring wisdom wiseguy wish wisteria wit witch withdrawal witness wok wolf woman wombat wonder wont wood
woodchuck woodland woodshed woodwind wool woolens word wording work workbench worker workforce workhorse working
workout workplace workshop world worm worry worship worshiper worth wound wrap wraparound wrapper wreck wrecker
wren wrench wrestler wriggler wrinkle wrist writer writing wrong xylophone yacht yahoo yak yam yang yard yarmulke
yarn yawl year yeast yellowjacket yesterday yew yin yoga yogurt yoke yolk young youngster yourself youth yoyo yurt
zampone zebra zebrafish zen zephyr zero ziggurat zinc zipper zither zombie zone zoo zoologist zoology zucchini
""".split())

ADJECTIVES: tuple[str, ...] = tuple("""
aback abaft abandoned abashed aberrant abhorrent abiding abject ablaze abnormal aboard aboriginal abortive
abounding abrasive abrupt absent absorbed absorbing abstracted absurd abundant abusive acceptable accessible
accidental accurate acoustic acrid adamant adaptable addicted adhesive adjoining adorable adventurous afraid
aggressive agonizing agreeable ahead alcoholic alert alike alive alleged alluring aloof ambiguous ambitious amuck
amused ancient angry animated annoyed annoying anxious apathetic aquatic aromatic arrogant ashamed aspiring
assorted astonishing attractive auspicious available average aware awful axiomatic bad barbarous bashful bawdy
beautiful belligerent berserk better bewildered billowy bitter bizarre blushing boiling boorish bored boring
boundless brainy brash brave brawny breakable breezy brief bright broad broken bumpy burly busy cagey callous calm
capable capricious careful cautious ceaseless changeable charming cheerful childlike chilly chivalrous chubby
chunky clammy classy clean clear clever cloistered cloudy clumsy coherent cold colorful colossal combative
comfortable concerned condemned confused cooing cool cooperative courageous cowardly crabby craven crazy credible
creepy crooked crowded cruel cuddly cultured curious curly curved cute cynical daffy daily damaged damaging damp
dangerous dapper dark dashing dazzling dead deadpan deafening debonair decisive decorous deeply defeated defective
defiant delicious delightful demonic depressed deranged deserted detailed determined devilish didactic different
difficult diligent direful disagreeable discreet disgusted dispensable distinct disturbed divergent dizzy
domineering doubtful drab draconian dramatic drunk dull dusty dynamic eager early earsplitting earthy easy eatable
economic educated efficacious efficient elated elderly elegant elfin elite embarrassed eminent empty enchanting
encouraging endurable energetic entertaining enthusiastic envious equable erect erratic ethereal evanescent
evasive evil excellent excited exclusive exotic expensive exuberant exultant fabulous faded faint fair faithful
fallacious famous fanatical fancy fantastic fascinated fast faulty fearless feigned fertile festive few fierce
filthy fine finicky flagrant flaky flashy flat flawless flippant flowery fluffy fluttering foamy foolish foregoing
forgetful fortunate fragile frail frantic freezing fresh fretful friendly frightened functional funny furtive
futuristic fuzzy gabby gainful gamy gaping garrulous gaudy gentle giddy gifted gigantic glamorous gleaming glib
glorious glossy godly good goofy gorgeous graceful grandiose greasy great greedy green grieving groovy grotesque
grouchy grubby gruesome grumpy guarded guiltless gullible gusty guttural habitual half hallowed halting handsome
handsomely hapless happy harmonious harsh heady healthy heavenly heavy hellish helpful helpless hesitant high
highfalutin hilarious hissing historical holistic hollow homeless homely honorable horrible hospitable hulking
humdrum humorous hungry hurried hurt hushed husky hypnotic hysterical icky icy idiotic ignorant ill illegal
illustrious imaginary immense imminent impartial imperfect important imported impossible incandescent incompetent
inconclusive industrious inexpensive innate innocent inquisitive instinctive internal invincible irate itchy jaded
jagged jazzy jealous jittery jobless jolly joyous judicious juicy jumbled jumpy juvenile kaput kind kindhearted
knotty knowing known labored lacking lamentable languid large late laughable lavish lazy lean learned lethal level
lewd light likeable literate little lively lonely long longing loose lopsided loud loutish lovely loving low lowly
lucky ludicrous lush luxuriant lying lyrical macabre macho maddening madly magenta magical magnificent majestic
makeshift malicious mammoth maniacal many marked massive mature measly meek melodic melted merciful mere mighty
mindless miniature minor miscreant misty moaning modern moldy momentous motionless muddled muddy mundane murky
mushy mute mysterious naive nappy narrow nasty naughty nauseating nebulous needless needy neighborly nervous new
nice nifty noiseless noisy nonchalant nondescript nonstop nostalgic nosy noxious null numberless numerous
nutritious nutty oafish obedient obeisant obnoxious obscene obsequious observant obsolete obtainable oceanic odd
offbeat old omniscient onerous open optimal orange ordinary organic ossified outrageous outstanding oval overjoyed
overrated overt overwrought painful painstaking panicky panoramic parched parsimonious pastoral pathetic peaceful
penitent perfect periodic permissible perpetual petite phobic picayune piquant placid plain plastic plausible
pleasant plucky pointless poised political poor possessive powerful precious premium pretty prickly productive
profuse protective proud psychedelic psychotic puffy pumped puny purple purring puzzled quack quaint quarrelsome
questionable quick quickest quiet quixotic quizzical rabid racial ragged rainy rambunctious rampant rapid rare
raspy ratty real rebellious receptive recondite red redundant reflective relieved reminiscent repulsive resolute
resonant rhetorical rich righteous rightful ripe ritzy roasted robust romantic roomy rotten rough round royal
ruddy rural rustic ruthless sable sad salty sassy satisfying scandalous scarce scary scattered scientific scrawny
screeching secretive sedate seemly selective selfish shaggy shaky shallow sharp shiny shivering shocking short
shrill shy silent silky silly sincere skillful skinny sleepy slimy slippery sloppy slow small smelly smiling
smoggy smooth sneaky snobbish snotty soft soggy solid somber sordid sore sour sparkling spectacular spicy spiffy
spiritual splendid spooky spotless spurious squalid square squealing squeamish staking stale standing statuesque
steadfast steady steep stereotyped sticky stimulating stingy stormy strange strong stupid subdued subsequent
substantial successful succinct sulky super supreme swanky sweet sweltering swift symptomatic synonymous taboo
tacit tacky talented tall tame tan tangible tangy tart tasteful tasteless tasty tawdry tearful teeny telling
temporary tender tense tenuous terrible tested testy thankful therapeutic thinkable thirsty thoughtful thoughtless
threatening thundering tightfisted tiny tired tiresome toothsome torpid tough towering tranquil trashy tricky
trite troubled truculent typical ubiquitous ugliest ugly ultra unable unadvised unarmed unbecoming unbiased
uncovered understood undesirable unequaled uneven uninterested unsightly unsuitable unusual upbeat uppity upset
uptight used utopian utter uttermost vacuous vague various vast vengeful venomous verdant versed victorious
vigorous vivacious voiceless volatile voracious vulgar wacky waggish wakeful wandering wanting warlike warm wary
wasteful watchful watery weak wealthy weary wee whimsical whispering wholesale wicked wide willing wiry wise
wistful witty woebegone womanly wonderful wooden woozy workable worried worthless wrathful wretched wrong wry
yielding young youthful yummy zany zealous zippy zonked
""".split())

VERBS: tuple[str, ...] = tuple("""
abide accelerate accept accomplish achieve acquire acted activate adapt add address administer admire admit adopt
advise afford agree alert alight allow altered amuse analyze announce annoy answer anticipate apologize appear
applaud applied appoint appraise appreciate approve arbitrate argue arise arrange arrest arrive ascertain ask
assemble assess assist assure attach attack attain attempt attend attract audited avoid awake back bake balance
ban bare bat bathe battle beam bear beat become beg begin behave behold belong bend beset bet bid bind bite bleach
bleed bless blind blink blot blush boast boil bolt bomb book bore borrow bounce bow box brake branch break breathe
breed brief bring broadcast bruise brush bubble budget build bump burn burst bury bust buy buze calculate camp
care carry carve cast catalog catch cause challenge change charge chart chase cheat check cheer chew choke choose
chop claim clap clarify classify clean clear cling clip close clothe coach coil collect color comb command
communicate compare compete compile complain complete compose compute conceive concentrate concern conclude
conduct confess confront confuse connect conserve consider consist consolidate construct consult contain continue
contract control convert coordinate copy correct correlate cost cough counsel count cover crack crash crawl create
creep critique cross crush cry cure curl curve cut cycle dam damage dance dare deal decay deceive decide decorate
define delay delegate delight deliver demonstrate depend describe desert deserve design destroy detail detect
determine develop devise diagnose dig direct disagree disappear disapprove disarm discover dislike dispense
display disprove dissect distribute dive divert divide doubt draft drag drain dramatize draw dress drink drip
drive drop drown drum dust dwell earn edited educate eliminate embarrass employ empty enacted encourage end endure
enforce engineer enhance enjoy enlist ensure enter entertain escape establish estimate evaluate examine exceed
excite excuse execute exercise exhibit exist expand expect expedite experiment explain explode express extend
extract face facilitate fade fail fancy fasten fax fear feed feel fence fetch fight file fill film finalize
finance find fire fit fix flap flash flee fling float flood flow flower fly fold follow fool forbid force forecast
forego foresee foretell forget forgive form formulate forsake frame freeze frighten fry gather gaze generate get
give glow glue govern grab graduate grate grease greet grin grind grip groan grow guarantee guard guess guide
hammer handle handwrite hang happen harass harm hate haunt head heal heap hear heat help hide hold hook hop hope
hover hug hum hunt hurry hurt hypothesize identify ignore illustrate imagine implement impress improve improvise
include increase induce influence inform initiate inject injure inlay innovate input inspect inspire install
institute instruct insure integrate intend intensify interest interfere interlay interpret interrupt interview
introduce invent inventory investigate invite irritate itch jam jog join joke judge juggle jump justify keep kept
kick kiss kneel knit knock knot know label land last laugh launch lay lead lean leap learn leave lecture led lend
let level license lick lie lifted light lighten like list listen live locate lock log long look lose maintain man
manage manipulate manufacture map march mark market marry match mate matter mean measure meddle mediate meet melt
memorize mend mentor milk mine mislead miss misspell mistake mix moan model modify monitor moor motivate mourn
move mow muddle mug multiply nail name navigate need negotiate nest nod nominate normalize note notice number obey
object observe obtain occur offend offer officiate open operate order organize oriented originate overcome overdo
overdraw overflow overhear overtake overthrow owe own pack paddle paint park part participate pass paste pat pause
pay peck pedal peel peep perceive perfect perform permit persuade photograph pick pilot pinch pine pinpoint
pioneer place plan plant plead please plug point poke polish pop possess post pour practice praised pray preach
precede predict prefer prepare prescribe present preserve preset preside press pretend prevent print process
procure produce profess program progress project promise promote proofread propose protect prove provide publicize
pull pump puncture punish purchase push put qualify question queue quit race radiate rain raise rank rate reach
read realign realize reason receive recognize recommend reconcile record recruit reduce refer reflect refuse
regret regulate rehabilitate reign reinforce reject rejoice relate relax release rely remain remember remind
remove render reorganize repair repeat replace reply report represent reproduce request rescue research resolve
respond restored restructure retire retrieve return review revise rhyme rid ride ring rinse rise risk rob rock
roll rot rub ruin rule run rush sail satisfy save saw say scare scatter schedule scold scorch scrape scratch
scream screw scribble scrub seal search secure see seek select sell send sense separate serve service set settle
sew shade shake shape share shave shear shed shelter shine shiver shock shoe shoot shop show shrink shrug shut
sigh sign signal simplify sin sing sink sip sit sketch ski skip slap slay sleep slide sling slink slip slit slow
smash smell smile smite smoke sneak sneeze sniff snore snow soak solve soothe soothsay sort sound sow spare spark
sparkle speak specify speed spell spend spill spin spit split spoil spot spray spring sprout squash squeak squeal
squeeze stain stamp stand stare start stay steal steer step stick stimulate sting stink stir stitch stop store
streamline strengthen stretch stride strike string strive stroke structure study stuff sublet subtract succeed
suffer suggest suit summarize supervise supply support suppose surprise surround suspect suspend swear sweat sweep
swell swim swing switch symbolize synthesize systemize tabulate take talk tame tap target teach tear tease
telephone tell tempt terrify test thank thaw think thrive throw thrust tick tickle tie time tip tire touch tour
tow trace trade train transcribe transfer transform translate transport trap travel tread treat tremble trick trip
trot trouble troubleshoot trust try tug tumble turn tutor twist type undergo understand undertake undress unfasten
unify unite unlock unpack untidy update upgrade uphold upset use utilize vanish verbalize verify vex visit wail
wait wake walk wander want warm warn wash waste watch water wave wear weave wed weep weigh welcome wend whine whip
whirl whisper whistle win wind wink wipe wish withdraw withhold withstand wobble wonder work worry wrap wreck
wrestle wriggle wring write yawn yell zip zoom
""".split())

# fmt: on
